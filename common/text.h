// Small text helpers shared by the CLI, config and file readers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ftune {

// Levenshtein distance, used to suggest the closest valid key for a typo.
size_t edit_distance(const std::string& a, const std::string& b);

// The candidate closest to `word`, or "" when none is reasonably close.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

std::vector<std::string> split(const std::string& s, char sep);

// 70553706496 -> "70,553,706,496".
std::string with_commas(int64_t n);

// Human-readable byte count: "1.50 GiB".
std::string format_bytes(double bytes);

}  // namespace ftune
