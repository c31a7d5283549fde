"""gpubill: settings, process launcher, CLI and demo that tie the packages together."""
