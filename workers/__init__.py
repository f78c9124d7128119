"""Training workers: the Celery app and the train → evaluate → export → publish pipeline."""
