# The ch08 lab (scripts/lab.sh ch08): with -DLAB=ch08 the student file below replaces its reference file in the
# `common` library. Reference paths are relative to the repository root, student paths to this folder.
infer_lab_swap(common/src/engine/speculative_verify.cpp verify_student.cpp)   # exercises 1 (greedy) and 2 (rejection)
