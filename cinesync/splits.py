"""The evaluation splits a pipeline may ask for, by name: shared by the CLI and the training workers.

auto: the data set's published fixed split, else leave-one-out by time, else a seeded random held-out
item per user. loo-time: leave-one-out by time (validation: each user's second-latest item),
refused for a data set without timestamps; ml-1m then reads its timestamped ratings file.
"""

SPLITS = ("auto", "loo-time")
