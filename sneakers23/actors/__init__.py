"""Ray actors: one inventory cache per node, the replication actor that keeps them in step, the
release clock, and one sales actor per product. (Their names are here, so that a client finds an
actor without importing it.)"""

NAMESPACE = "sneakers23"  # every named actor lives here, whoever (job, replica, CLI) looks it up
REPLICATOR_NAME = "replicator"
RELEASE_CLOCK_NAME = "release-clock"
PRESENCE_NAME = "presence"  # every open shopper tab (actors/presence.py)
ACTIVITY_NAME = "activity"  # sales and refusals, per second (actors/activity.py)

# The cluster-wide actors that the admin dashboard reads live on the head node, as does the desk
# itself: they die only with the cluster, never with a worker node that a drop can lose.
ON_HEAD_NODE = {"node:__internal_head__": 0.001}
