"""Mock drops, runnable from the CLI (`sneakers23 drop …`) or as Ray jobs (`python -m sneakers23.jobs.drop …`)."""
