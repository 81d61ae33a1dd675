"""Ray actors: one inventory cache per node, the replication actor that keeps them in step, the
release clock, one sales actor per product, and the presence and activity actors that the admin
dashboard reads. (Their names are in sneakers23/cluster.py, so that a client finds an actor without
importing it.)"""
