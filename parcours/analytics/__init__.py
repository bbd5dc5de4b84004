"""Analytics over the warehouse: the statistics every derived dataset stores as columns."""
