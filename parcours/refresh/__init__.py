"""The refresher: every derived dataset materialised from what ingestion landed (docs/analytics-core.md §3)."""
