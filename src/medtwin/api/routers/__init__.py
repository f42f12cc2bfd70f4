"""HTTP routers, one module per resource family."""
