"""Row filters that run after generation: language ID and near-duplicate removal."""
