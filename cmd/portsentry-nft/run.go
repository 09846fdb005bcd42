package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/portsentry-nft/portsentry-nft/internal/daemon"
	"github.com/portsentry-nft/portsentry-nft/internal/logging"
)

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "[--config FILE]",
		"Runs the daemon in the foreground: installs table inet portsentry, watches the\n"+
			"monitored ports through NFLOG and blocks scanners in the sets blocked/blocked6.\n"+
			"SIGINT/SIGTERM stop it; blocks stay in the kernel until they expire.", stderr)
	path := configFlag(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, ok := loadConfig(*path, stderr)
	if !ok {
		return 1
	}
	log, closeLog, err := logging.New(cfg.Logging, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "portsentry-nft: %v\n", err)
		return 1
	}
	defer closeLog()
	for _, w := range cfg.Warnings {
		log.Warn("adminalert: config warning: " + w.Error())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := daemon.New(daemon.Options{Config: cfg, Logger: log}).Run(ctx); err != nil {
		log.Error(fmt.Sprintf("adminalert: ERROR: %v", err))
		return 1
	}
	return 0
}
