"""The OpenAI fine-tuning API over kubetune's resources (`kubetune api`).

Pure parts (no HTTP, no Kubernetes): `translate` (OpenAI request <-> FineTuneJob manifest and views of it),
`errors` (the OpenAI error shape), `files` and `stored` (a namespace's files and stored completions on a
mounted folder), `keys` (API keys to namespaces). `server` is the thin aiohttp layer over kubetune.k8s.
"""
