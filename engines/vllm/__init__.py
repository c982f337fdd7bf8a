"""vLLM's helpers; engines/vllm_offline.py is the entry point (VLLMEngine): its args (args), request features
(sampling), beam search (beam), per-step telemetry (telemetry), and the offline batch engine (batch)."""
