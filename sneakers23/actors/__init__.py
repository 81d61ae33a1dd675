"""Ray actors: one inventory cache per node, and the replication actor that keeps them in step."""

NAMESPACE = "sneakers23"  # every named actor lives here, whoever (job, replica, CLI) looks it up
