// The output directory of `ftune data tokenize`: its lock and its state before a run (fresh,
// or resumed from a manifest). Rank 0 does all of this; the other ranks learn the outcome.
#pragma once

#include <iosfwd>
#include <map>
#include <string>

#include "data/pipeline/manifest.h"

namespace ftune::data {

// dir/.lock names the host and pid of the run writing the directory. Another live run's lock
// is refused, naming it; a lock whose process is gone (same host) is taken over, with a line on
// `log`. Released (removed) by the destructor.
class OutputLock {
 public:
  OutputLock(const std::string& dir, const std::string& host, std::ostream& log);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  std::string path_, mine_;
};

struct OutputState {
  std::map<int64_t, ItemRecord> done;  // finished items, checked against their shards
  bool complete = false;               // index.json is there: nothing left to do
};

// Without `resume`: refuses a directory holding a set, shards or a manifest (the message says
// --resume exists), else writes now's manifest. With `resume`: refuses a manifest whose
// settings or inputs differ from `now` (naming each difference) or whose records do not match
// the shards; removes shards of unfinished items and temporaries, and returns the finished
// items. A directory with nothing in it starts afresh either way.
OutputState prepare_output(const std::string& dir, const RunManifest& now, const std::vector<WorkItem>& items,
                           bool resume, std::ostream& log);

}  // namespace ftune::data
