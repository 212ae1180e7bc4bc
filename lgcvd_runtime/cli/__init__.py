"""The command lines: `chassis` (what every lgcvd command shares: one-line errors, exit codes on
signals), `run` (`lgcvd-run`) and its parts (options, outputs, progress, info, bench, remote).
Nothing outside `cli/` imports from here except the other command lines, for the chassis."""
