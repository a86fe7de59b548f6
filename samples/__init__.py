"""Sample integrations and the demo's loopback cart and WMS servers."""
