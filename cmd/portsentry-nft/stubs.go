package main

import "io"

func cmdRun(args []string, stdout, stderr io.Writer) int   { return 1 }
func cmdRules(args []string, stdout, stderr io.Writer) int { return 1 }
