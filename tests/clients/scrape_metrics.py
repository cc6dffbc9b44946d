"""Scrapes a Prometheus endpoint and parses it with prometheus_client's
text-format parser (the reference parser: it raises on malformed input).

Prints {family: {"type": ..., "samples": [[name, labels, value], ...]}}.

    scrape_metrics.py URL
"""

import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

with urllib.request.urlopen(sys.argv[1], timeout=60) as response:
    content_type = response.headers.get("content-type", "")
    text = response.read().decode("utf-8")

families = {}
for family in text_string_to_metric_families(text):
    families[family.name] = {
        "type": family.type,
        "samples": [[s.name, s.labels, s.value] for s in family.samples],
    }
print(json.dumps({"content_type": content_type, "families": families}))
