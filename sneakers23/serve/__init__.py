"""Ray Serve deployments: the catalog pages and API, and the Phoenix-protocol product channels."""
