package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	sdnotify "github.com/coreos/go-systemd/v22/daemon"

	"github.com/portsentry-nft/portsentry-nft/internal/config"

	"github.com/portsentry-nft/portsentry-nft/internal/daemon"
	"github.com/portsentry-nft/portsentry-nft/internal/logging"
)

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "[--config FILE]",
		"Runs the daemon in the foreground: installs table inet portsentry, watches the\n"+
			"monitored ports through NFLOG and blocks scanners in the sets blocked/blocked6.\n"+
			"SIGINT/SIGTERM stop it; blocks stay in the kernel until they expire.", stderr)
	cfg, path, code, ok := parseConfigCommand(fs, args, stderr)
	if !ok {
		return code
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
	if os.Getenv("GOGC") == "" {
		// Under sustained attack the state of active blocks and repeat
		// offenders is tens of MiB live (bounded; measured in make soak):
		// let the heap grow by half of it between collections, not double.
		// GOGC overrides.
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// SIGHUP is caught from here on (its default would end the process
	// while the state loads) and acted on once the daemon is ready.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ready := make(chan struct{})
	d, err := daemon.New(daemon.Options{Config: cfg, Logger: log, Version: version, Ready: func() {
		// systemd Type=notify: ready once the ruleset is in and capture is bound.
		sdnotify.SdNotify(false, sdnotify.SdNotifyReady)
		close(ready)
	}})
	if err != nil {
		log.Error(fmt.Sprintf("adminalert: ERROR: %v", err))
		return 1
	}
	go reloadOnHUP(ctx, ready, hup, d, path, log)
	err = d.Run(ctx)
	sdnotify.SdNotify(false, sdnotify.SdNotifyStopping)
	if err != nil {
		log.Error(fmt.Sprintf("adminalert: ERROR: %v", err))
		return 1
	}
	return 0
}

// reloadOnHUP reloads d on each SIGHUP once it is ready. A SIGHUP during
// start-up (logrotate during a long restore) waits for READY: the signal
// is queued, not lost, and nothing reloads a daemon that is still
// starting.
func reloadOnHUP(ctx context.Context, ready <-chan struct{}, hup <-chan os.Signal, d *daemon.Daemon, path string, log *slog.Logger) {
	select {
	case <-ready:
	case <-ctx.Done():
		return
	}
	for range hup {
		sdnotify.SdNotify(false, sdnotify.SdNotifyReloading)
		reload(d, path, log)
		sdnotify.SdNotify(false, sdnotify.SdNotifyReady)
	}
}

// reload re-reads the configuration on SIGHUP; a file with errors is
// refused and the running configuration stays.
func reload(d *daemon.Daemon, path string, log *slog.Logger) {
	log.Info("adminalert: SIGHUP: reloading " + path)
	cfg, err := config.Load(path)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			log.Error("adminalert: reload refused, keeping the running configuration: " + line)
		}
		return
	}
	if err := d.Reload(cfg); err != nil {
		log.Error(fmt.Sprintf("adminalert: reload refused, keeping the running configuration: %v", err))
		return
	}
	log.Info("adminalert: configuration reloaded; every block kept.")
}
