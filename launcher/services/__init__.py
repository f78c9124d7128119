"""Starting, finding and stopping the servers CineSync runs on: Redis, Celery, Flower, Triton, control plane."""
