#include "data/reader/batch_maker.h"

#include "common/error.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace ftune::data {

std::string ReaderState::to_json() const {
  return nlohmann::json{{"epoch", epoch}, {"sample", sample}}.dump();
}

ReaderState ReaderState::from_json(const std::string& s) {
  try {
    auto j = nlohmann::json::parse(s);
    ReaderState st{j.at("epoch").get<int64_t>(), j.at("sample").get<int64_t>()};
    if (st.epoch < 0 || st.sample < 0) throw Error("negative epoch or sample");
    return st;
  } catch (const std::exception& e) {
    throw Error("reader state '" + s + "' is malformed: " + e.what());
  }
}

BatchMaker::BatchMaker(std::shared_ptr<const ShardSet> set, ReaderConfig cfg, Split split, int rank,
                       int world_size)
    : set_(std::move(set)), cfg_(std::move(cfg)), split_(split), rank_(rank), world_(world_size) {
  cfg_.validate(world_);
  FTUNE_CHECK(rank_ >= 0 && rank_ < world_, "rank outside the world");
  // A separate validation set is read whole; otherwise the split is a share of the documents.
  double fraction = cfg_.val_shards.empty() ? cfg_.val_fraction : 0.0;
  Split which = cfg_.val_shards.empty() ? split_ : Split::train;
  docs_ = split_documents(*set_, which, fraction);
  auto n = static_cast<size_t>(cfg_.seq_len + 1);
  tok_.resize(n);
  mask_.resize(n);
  starts_doc_.resize(n);
}

const EpochPlan& BatchMaker::plan(int64_t epoch) {
  if (!plan_ || plan_->epoch() != epoch) {
    plan_.reset();  // free the old plan before building the next one
    plan_ = std::make_unique<EpochPlan>(*set_, docs_, cfg_, epoch);
    check_enough(*plan_);
  }
  return *plan_;
}

int64_t BatchMaker::samples_in_epoch(int64_t epoch) { return plan(epoch).samples(); }

void BatchMaker::check_enough(const EpochPlan& plan) const {
  if (plan.samples() >= cfg_.global_batch) return;
  const char* split = split_ == Split::train ? "training" : "validation";
  throw Error("the " + std::string(split) + " split of " + set_->dir() + " (" +
              std::to_string(docs_.size()) + " documents) gives " + std::to_string(plan.samples()) +
              " sequences of " + std::to_string(cfg_.seq_len) + " tokens in epoch " +
              std::to_string(plan.epoch()) + ", fewer than one global batch of " +
              std::to_string(cfg_.global_batch) + "; lower data.global_batch or data.seq_len, or add data");
}

Batch BatchMaker::make(ReaderState state) {
  const int64_t G = cfg_.global_batch, L = cfg_.seq_len;
  // A cursor that leaves no full batch (end of epoch, or a resume with a larger global batch)
  // moves on to the next epoch: every epoch serves whole global batches only.
  while (state.sample + G > plan(state.epoch).samples()) state = {state.epoch + 1, 0};
  const EpochPlan& p = plan(state.epoch);
  Batch b;
  b.rows = G / world_;
  b.seq_len = L;
  b.epoch = state.epoch;
  auto cells = static_cast<size_t>(b.rows * L);
  b.input_ids.resize(cells);
  b.labels.resize(cells);
  b.position_ids.resize(cells);
  b.cu_seqlens.push_back(0);
  // Rank r of W takes the r-th contiguous slice of the global batch.
  int64_t first = state.sample + rank_ * b.rows;
  for (int64_t row = 0; row < b.rows; ++row) {
    int64_t sample = p.sample_at(first + row);
    b.sample_ids.push_back(sample);
    if (cfg_.packing == "pack") fill_pack_row(p, sample, row, b);
    else fill_concat_row(p, sample, row, b);
  }
  for (size_t k = 1; k < b.cu_seqlens.size(); ++k) {
    b.max_seqlen = std::max(b.max_seqlen, b.cu_seqlens[k] - b.cu_seqlens[k - 1]);
  }
  b.target_tokens = std::count_if(b.labels.begin(), b.labels.end(), [](int32_t l) { return l != kIgnoreLabel; });
  int64_t next = state.sample + G;
  b.next_state = next + G > p.samples() ? ReaderState{state.epoch + 1, 0} : ReaderState{state.epoch, next};
  return b;
}

void BatchMaker::read_piece(int64_t doc, int64_t start, int64_t count, int32_t* tok, uint8_t* mask) {
  ShardSet::DocRef ref = set_->document(doc);
  set_->read_tokens(ref.shard, ref.begin + start, count, tok);
  set_->read_mask(ref.shard, ref.begin + start, count, mask);
}

// Sample i of the concatenated stream: tokens [i*L, (i+1)*L) plus one more for the last label.
void BatchMaker::fill_concat_row(const EpochPlan& p, int64_t sample, int64_t row, Batch& b) {
  const int64_t L = cfg_.seq_len;
  const auto& starts = p.stream_starts();
  const int64_t begin = sample * L, end = std::min(begin + L + 1, starts.back());
  std::fill(starts_doc_.begin(), starts_doc_.end(), uint8_t{0});
  auto k = static_cast<size_t>(std::upper_bound(starts.begin(), starts.end(), begin) - starts.begin() - 1);
  for (int64_t pos = begin; pos < end; ++k) {
    int64_t take = std::min(starts[k + 1], end) - pos;
    if (take <= 0) continue;  // an empty document
    int64_t t = pos - begin;
    if (pos == starts[k]) starts_doc_[static_cast<size_t>(t)] = 1;
    read_piece(p.stream_docs()[k], pos - starts[k], take, &tok_[static_cast<size_t>(t)], &mask_[static_cast<size_t>(t)]);
    pos += take;
  }
  const int64_t avail = end - begin;  // L + 1, or less at the very end of the stream
  int32_t* ids = &b.input_ids[static_cast<size_t>(row * L)];
  int32_t* labels = &b.labels[static_cast<size_t>(row * L)];
  int32_t* positions = &b.position_ids[static_cast<size_t>(row * L)];
  const auto row_offset = static_cast<int32_t>(row * L);
  int64_t doc_start = 0;
  for (int64_t t = 0; t < L; ++t) {
    auto ut = static_cast<size_t>(t);
    if (t > 0 && starts_doc_[ut]) {
      doc_start = t;
      b.cu_seqlens.push_back(row_offset + static_cast<int32_t>(t));
    }
    ids[t] = tok_[ut];
    positions[t] = static_cast<int32_t>(cfg_.reset_position_ids ? t - doc_start : t);
    bool has_next = t + 1 < avail;
    bool crosses = has_next && cfg_.mask_doc_boundary && starts_doc_[ut + 1];
    labels[t] = (has_next && !crosses && mask_[ut + 1]) ? tok_[ut + 1] : kIgnoreLabel;
  }
  b.cu_seqlens.push_back(row_offset + static_cast<int32_t>(L));
}

// Whole documents (or pieces of long ones) side by side, then padding.
void BatchMaker::fill_pack_row(const EpochPlan& p, int64_t sample, int64_t row, Batch& b) {
  const int64_t L = cfg_.seq_len;
  int32_t* ids = &b.input_ids[static_cast<size_t>(row * L)];
  int32_t* labels = &b.labels[static_cast<size_t>(row * L)];
  int32_t* positions = &b.position_ids[static_cast<size_t>(row * L)];
  const auto row_offset = static_cast<int32_t>(row * L);
  int64_t o = 0;  // [tokens] filled so far in this row
  for (const Segment* s = p.row_begin(sample); s != p.row_end(sample); ++s) {
    read_piece(s->doc, s->start, s->length, ids + o, mask_.data());
    for (int64_t t = 0; t < s->length; ++t) {
      positions[o + t] = static_cast<int32_t>(t);
      // No label past the piece's end: attention is restricted to the piece.
      bool has_next = t + 1 < s->length;
      labels[o + t] = (has_next && mask_[static_cast<size_t>(t + 1)]) ? ids[o + t + 1] : kIgnoreLabel;
    }
    o += s->length;
    b.cu_seqlens.push_back(row_offset + static_cast<int32_t>(o));
  }
  for (int64_t t = o; t < L; ++t) {
    ids[t] = static_cast<int32_t>(cfg_.pad_id);
    labels[t] = kIgnoreLabel;
    positions[t] = static_cast<int32_t>(t - o);
  }
  if (o < L) b.cu_seqlens.push_back(row_offset + static_cast<int32_t>(L));
}

}  // namespace ftune::data
