# service targets
