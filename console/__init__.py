"""The operator console: a web role (Starlette, server-rendered pages, no torch) over AdminService,
the control plane's metrics and, when configured, Prometheus' HTTP API."""
