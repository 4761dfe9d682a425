// The ranks of a `ftune data tokenize` job, as the pipeline needs them: who am I, and a few
// collectives over bytes and counters. data/ links no communicator: the launcher adapts
// ftune_comm's Communicator to this (launcher/cmd_data_tokenize.cpp), tests and the
// single-process run use SoloGroup.
//
// Every rank calls the same collectives in the same order (as with any communicator). A
// collective that a dead or stuck peer never joins ends the job (the adapter's timeouts);
// it never returns an error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ftune::data {

class Group {
 public:
  virtual ~Group() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const std::string& host() const = 0;

  virtual void barrier() = 0;
  // root's `bytes` on every rank.
  virtual std::string broadcast(const std::string& bytes, int root) = 0;
  // Every rank's `bytes`, in rank order.
  virtual std::vector<std::string> all_gather(const std::string& bytes) = 0;
  // Element-wise sums over the ranks, in place; every rank passes the same length.
  virtual void sum(std::vector<int64_t>& values) = 0;
  // From here on the collectives are the work loop's frequent short ones (the adapter's
  // step timeout); before, rank 0 may spend long checking a directory (start-up timeout).
  virtual void work_started() {}

  std::string who() const { return "rank " + std::to_string(rank()) + " on " + host(); }
};

// One process: rank 0 of 1, every collective is the identity.
class SoloGroup : public Group {
 public:
  SoloGroup();
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& host() const override { return host_; }
  void barrier() override {}
  std::string broadcast(const std::string& bytes, int) override { return bytes; }
  std::vector<std::string> all_gather(const std::string& bytes) override { return {bytes}; }
  void sum(std::vector<int64_t>&) override {}

 private:
  std::string host_;
};

}  // namespace ftune::data
