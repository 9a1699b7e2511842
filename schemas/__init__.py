"""The Avro schemas of the topics, one `.avsc` per topic role: installed as package data of
`profilestream.schemas` (pyproject.toml) and read with `importlib.resources`
(`profilestream.codec.avro.SCHEMAS`)."""
