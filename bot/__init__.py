"""Everything Slack: the command grammar, the bolt app and its Lambda entry, Block Kit views, the notifier."""
