"""Publishing: the dataset card and the push to the Hugging Face Hub."""
