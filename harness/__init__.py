"""What the tests and the benchmarks both use to stand up and drive a store: a throwaway PostgreSQL
server (postgres.py), free ports and process checks (ports.py, processes.py), direct reads and
writes of the shop's rows (shop.py), waiting for a condition (waiting.py), the hostile clients'
attacks (attacks.py), and Ray nodes on one machine with the store's web applications (nodes.py). Not part of the sneakers23 package: `tests/` and `bench/` import it from the
repository's root."""
