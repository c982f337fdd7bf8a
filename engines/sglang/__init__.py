"""SGLang's helpers; engines/sglang_offline.py is the entry point (SGLangEngine): its args and their field list
(args, server_args.json) and its stream's token accounting (stream)."""
