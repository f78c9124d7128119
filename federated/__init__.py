"""CineSync's Flower app: the ServerApp that runs federated rounds, the ClientApp every SuperNode runs on
its own users' histories, the federated kinds and the aggregation strategies they can use."""
