"""CineSync: settings, process launcher and CLI that tie the serving roles together."""
