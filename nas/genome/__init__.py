"""Stage 1, what can be built: block declarations (``blocks``), the genome string (``grammar``), the search
space file (``space``) and the network a genome builds (``layers``, ``build``). Only ``layers`` and ``build``
import torch: genomes are parsed, checked and bred without it."""
