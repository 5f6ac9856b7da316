"""What every service shares: internal RPC, configuration, metrics, logging, pools. Not built yet (issue #3)."""
