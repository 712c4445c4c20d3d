"""Input readers: the files, datasets and dumps records come from."""
