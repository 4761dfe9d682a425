// Replaced by the tokenizer, shard and reader sources as they land.
namespace ftune::data {}
