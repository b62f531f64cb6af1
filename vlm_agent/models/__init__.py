"""The embodied VLM family: one folder per model with configuration_/modeling_/processing_ files."""
