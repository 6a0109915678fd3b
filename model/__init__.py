"""GPT-2 and its trainer, fed by the pipeline's token shards."""
