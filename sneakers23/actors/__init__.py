"""Ray actors: one inventory cache per node, the replication actor that keeps them in step, the
release clock, and one sales actor per product. (Their names are here, so that a client finds an
actor without importing it.)"""

NAMESPACE = "sneakers23"  # every named actor lives here, whoever (job, replica, CLI) looks it up
REPLICATOR_NAME = "replicator"
RELEASE_CLOCK_NAME = "release-clock"
