"""berthd: the Docker Engine API (v1.41) over a unix socket."""
