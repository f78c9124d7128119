"""The evaluation splits a pipeline may ask for, by name: shared by the CLI and the training workers.

auto: the data set's published fixed split, else leave-one-out by time, else a seeded random held-out
item per user. loo-time: leave-one-out by time (validation: each user's second-latest item),
refused for a data set without timestamps; ml-1m then reads its timestamped ratings file.
movie-to-tv, tv-to-movie: cross-domain; a seeded share of the users with items in both domains keep
only their source-domain items and are evaluated on their target-domain ones. cold-items: a seeded
20 % of the items leave training (half validation, half test), evaluated cold, warm and all.
"""

# split name -> (source domain, target domain), the values of recsys.data.catalog.Domain
CROSS_DOMAIN = {"movie-to-tv": ("movie", "tv"), "tv-to-movie": ("tv", "movie")}
SPLITS = ("auto", "loo-time", *CROSS_DOMAIN, "cold-items")
