#include "data/pipeline/group.h"

#include <unistd.h>

namespace ftune::data {

SoloGroup::SoloGroup() {
  char buf[256] = {};
  host_ = gethostname(buf, sizeof buf - 1) == 0 ? buf : "unknown-host";
}

}  // namespace ftune::data
