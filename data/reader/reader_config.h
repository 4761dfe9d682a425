// Configuration of the streaming token reader; fields() gives `--data.*` flags and TOML `[data]`
// keys through cli::add_section.
#pragma once

#include <cstdint>
#include <string>

namespace ftune::data {

struct ReaderConfig {
  std::string shards;       // directory of the training shard set
  std::string val_shards;   // separate held-out set; "" splits `shards` by val_fraction
  double val_fraction = 0.0;  // share of documents held out, chosen per document
  int64_t seq_len = 2048;     // [tokens] per row
  int64_t global_batch = 8;   // [sequences] per optimizer step over all ranks
  std::string packing = "concat";  // "concat" | "pack"
  std::string long_docs = "split";  // pack mode, documents longer than seq_len: "split" | "truncate"
  bool mask_doc_boundary = true;     // concat: no label across a document boundary
  bool reset_position_ids = false;   // concat: position ids restart at each document
  int64_t pad_id = 0;     // pack mode padding token (its labels are always -100)
  int64_t seed = 1234;
  bool shuffle = true;    // shuffle documents and samples per epoch
  int64_t prefetch = 4;   // [batches] queued ahead by the background thread

  template <class F>
  void fields(F&& f) {
    f("shards", shards, "directory of the training token shards (index.json + shard-*.h5)");
    f("val_shards", val_shards, "directory of held-out shards; empty: hold out val_fraction of shards");
    f("val_fraction", val_fraction, "fraction of documents held out for validation (by document)");
    f("seq_len", seq_len, "tokens per sequence");
    f("global_batch", global_batch, "sequences per step over all ranks (a multiple of the world size)");
    f("packing", packing, "concat: documents joined into fixed windows; pack: whole documents per row, padded");
    f("long_docs", long_docs, "pack mode, documents longer than seq_len: split | truncate");
    f("mask_doc_boundary", mask_doc_boundary, "concat mode: no next-token label across documents");
    f("reset_position_ids", reset_position_ids, "concat mode: position ids restart at each document");
    f("pad_id", pad_id, "pack mode padding token id");
    f("seed", seed, "shuffle seed (the order is the same for any world size)");
    f("shuffle", shuffle, "shuffle documents and samples each epoch");
    f("prefetch", prefetch, "batches prepared ahead by the reader thread");
  }

  // Throws ftune::Error naming the key and what to change. `world_size` for divisibility.
  void validate(int world_size) const;
};

}  // namespace ftune::data
