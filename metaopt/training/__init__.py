"""Training agents with any optimizer: runs of vmapped seeds in compiled chunks (resumable
partial runs), and fresh agents trained with a learned optimizer to score it. Below evaluation,
tuning, tracking and the Ray edge, which all use it."""
