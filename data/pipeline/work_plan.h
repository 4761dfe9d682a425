// How `ftune data tokenize` divides its inputs among ranks. The inputs become a fixed list of
// work items -- a whole file (compressed, or a .txt read as one document), or a line-aligned
// byte range of an uncompressed file -- computed from the input list and the item size alone,
// so every rank and every resumed run computes the same list. Item i's documents come before
// item i+1's in the set, whichever rank made them: the set's order is the input order.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "data/pipeline/input.h"

namespace ftune::data {

struct InputFile {
  std::string path;
  uint64_t bytes = 0;       // [bytes on disk]
  bool splittable = false;  // uncompressed and read line by line
};

struct WorkItem {
  int64_t index = 0;
  int64_t file = 0;    // into the input list
  LineRange range;     // of line starts; {0, UINT64_MAX} for a whole file
  uint64_t bytes = 0;  // [bytes on disk] the item spans, for balancing and progress
  bool whole() const { return range.begin == 0 && range.end == UINT64_MAX; }
};

// The input files in order with their sizes; throws ftune::Error when a file is listed twice
// (the same file through two paths or patterns), naming both.
std::vector<InputFile> describe_inputs(const std::vector<std::string>& files, bool txt_as_file);

// Splittable files of more than `item_bytes` become ranges of about that size; every other
// file is one item (an empty file too: it yields no documents).
std::vector<WorkItem> plan_items(const std::vector<InputFile>& inputs, uint64_t item_bytes);

// The items of `todo` each rank makes, in item order: the largest first to the least loaded
// rank (by bytes), ties to the lower rank and index, so whole compressed files of uneven
// sizes still balance. The same on every rank.
std::vector<std::vector<int64_t>> assign_items(const std::vector<WorkItem>& items, const std::set<int64_t>& todo,
                                               int ranks);

// "a.jsonl bytes 0..134217728" / "a.jsonl.gz (whole file)": an item in messages.
std::string describe_item(const WorkItem& item, const std::vector<InputFile>& inputs);

}  // namespace ftune::data
