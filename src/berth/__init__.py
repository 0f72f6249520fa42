"""berth: Docker's network model (bridge, host, none, container:<name>, user networks) as a daemon and a thin CLI."""

__version__ = "0.1.0"
API_VERSION = "1.41"
MIN_API_VERSION = "1.12"
