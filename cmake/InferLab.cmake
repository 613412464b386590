# InferLab.cmake: graded lab exercises (scripts/lab.sh, ch*/lab/INSTRUCTOR.md).
#
# A lab is a folder <chapter>/lab/ holding
#   lab.cmake       one infer_lab_swap(<reference file> <student file>) line per exercise
#   *_student.cpp   the stubs students complete (they compile, and fail the lab tests)
#   tests/*.cpp     the lab's doctest cases -> binary lab_<name>_tests, ctest label lab_<name>
# and is registered with one line in the top-level CMakeLists.txt: infer_register_lab(<name> <folder>).
#
# Default build (LAB empty): every lab's tests are built and run against the reference engine, proving
# they pass on it. -DLAB=<name>: each student file replaces its reference file in the `common` library,
# so the whole engine (tests, chapter binaries) runs on the student's code.

set(LAB "" CACHE STRING "Lab whose student files replace the reference files (e.g. ch03); empty = the reference")
set(INFER_LABS "")

# infer_register_lab(NAME DIR): DIR (relative to the source root) holds lab.cmake and tests/.
function(infer_register_lab name dir)
  set(lab_dir "${PROJECT_SOURCE_DIR}/${dir}")
  if(NOT EXISTS "${lab_dir}/lab.cmake")
    message(FATAL_ERROR "infer_register_lab(${name}): ${dir}/lab.cmake does not exist")
  endif()
  set(INFER_LABS ${INFER_LABS} ${name} PARENT_SCOPE)
  set(INFER_LAB_DIR_${name} "${lab_dir}" PARENT_SCOPE)
endfunction()

# infer_lab_swap(REFERENCE STUDENT), called from a lab.cmake: REFERENCE is relative to the source root,
# STUDENT to the lab folder. Both must exist (checked in every build, so a renamed file breaks CI at once).
macro(infer_lab_swap reference student)
  set(_reference "${PROJECT_SOURCE_DIR}/${reference}")
  set(_student "${_infer_lab_dir}/${student}")
  foreach(_file IN ITEMS "${_reference}" "${_student}")
    if(NOT EXISTS "${_file}")
      message(FATAL_ERROR "lab ${_infer_lab_name}: infer_lab_swap names ${_file}, which does not exist")
    endif()
  endforeach()
  list(APPEND INFER_LAB_SWAP_REFERENCES "${_reference}")
  list(APPEND INFER_LAB_SWAP_STUDENTS "${_student}")
endmacro()

# infer_select_lab(): after the registrations. Reads every lab.cmake (validating its files) and keeps
# the swaps of the lab named by LAB in INFER_LAB_SWAP_REFERENCES / INFER_LAB_SWAP_STUDENTS.
macro(infer_select_lab)
  if(LAB AND NOT LAB IN_LIST INFER_LABS)
    message(FATAL_ERROR "LAB=${LAB} is not a lab; the labs are: ${INFER_LABS}")
  endif()
  set(_selected_references "")
  set(_selected_students "")
  foreach(_infer_lab_name IN LISTS INFER_LABS)
    set(_infer_lab_dir "${INFER_LAB_DIR_${_infer_lab_name}}")
    set(INFER_LAB_SWAP_REFERENCES "")
    set(INFER_LAB_SWAP_STUDENTS "")
    include("${_infer_lab_dir}/lab.cmake")
    if(_infer_lab_name STREQUAL LAB)
      set(_selected_references ${INFER_LAB_SWAP_REFERENCES})
      set(_selected_students ${INFER_LAB_SWAP_STUDENTS})
    endif()
  endforeach()
  set(INFER_LAB_SWAP_REFERENCES ${_selected_references})
  set(INFER_LAB_SWAP_STUDENTS ${_selected_students})
  if(LAB)
    message(STATUS "infer: LAB=${LAB}: the student files replace the reference ones:")
    foreach(_reference _student IN ZIP_LISTS INFER_LAB_SWAP_REFERENCES INFER_LAB_SWAP_STUDENTS)
      file(RELATIVE_PATH _reference_rel "${PROJECT_SOURCE_DIR}" "${_reference}")
      file(RELATIVE_PATH _student_rel "${PROJECT_SOURCE_DIR}" "${_student}")
      message(STATUS "infer:   ${_reference_rel} -> ${_student_rel}")
    endforeach()
  endif()
endmacro()

# infer_apply_lab_swaps(SOURCES_VAR): in a library's CMakeLists.txt, after its source list is built.
# Swaps each selected reference file in the list for its student file. A reference file this library
# does not compile is left for another library's call; infer_check_lab_swaps() catches one nobody swapped.
function(infer_apply_lab_swaps sources_var)
  set(sources ${${sources_var}})
  foreach(reference student IN ZIP_LISTS INFER_LAB_SWAP_REFERENCES INFER_LAB_SWAP_STUDENTS)
    list(FIND sources "${reference}" index)
    if(NOT index EQUAL -1)
      list(REMOVE_AT sources ${index})
      list(APPEND sources "${student}")
      set_property(GLOBAL APPEND PROPERTY INFER_LAB_SWAPPED "${reference}")
    endif()
  endforeach()
  set(${sources_var} ${sources} PARENT_SCOPE)
endfunction()

# infer_check_lab_swaps(): after every library is defined. A swap whose reference file no library
# compiled would silently test the reference: stop instead.
function(infer_check_lab_swaps)
  get_property(swapped GLOBAL PROPERTY INFER_LAB_SWAPPED)
  foreach(reference IN LISTS INFER_LAB_SWAP_REFERENCES)
    if(NOT reference IN_LIST swapped)
      message(FATAL_ERROR "LAB=${LAB}: no library compiles ${reference}, so its student file would never be used")
    endif()
  endforeach()
endfunction()

# infer_add_lab_tests(): one doctest binary per lab, lab_<name>_tests, its ctest tests labelled lab_<name>.
# A test that prints "SKIPPED:" (INFER_SKIP, e.g. a model file is absent) is reported by ctest as skipped.
function(infer_add_lab_tests)
  foreach(name IN LISTS INFER_LABS)
    set(lab_dir "${INFER_LAB_DIR_${name}}")
    file(GLOB lab_tests CONFIGURE_DEPENDS "${lab_dir}/tests/*.cpp")
    if(NOT lab_tests)
      message(FATAL_ERROR "lab ${name}: no tests in ${lab_dir}/tests/")
    endif()
    add_executable(lab_${name}_tests "${PROJECT_SOURCE_DIR}/common/tests/main.cpp" ${lab_tests})
    target_link_libraries(lab_${name}_tests PRIVATE common doctest::doctest)
    target_include_directories(lab_${name}_tests PRIVATE "${PROJECT_SOURCE_DIR}/common/tests")
    target_compile_definitions(lab_${name}_tests PRIVATE
      INFER_SOURCE_DIR="${PROJECT_SOURCE_DIR}" INFER_BINARY_DIR="${PROJECT_BINARY_DIR}")
    # ADD_LABELS 1: a doctest test suite becomes a ctest label too. Suite lab_self_check holds checks of the
    # lab's tests themselves (each hinted mistake is caught); scripts/lab.sh leaves them out of the grade.
    doctest_discover_tests(lab_${name}_tests WORKING_DIRECTORY ${PROJECT_BINARY_DIR}
      ADD_LABELS 1
      PROPERTIES LABELS lab_${name} SKIP_REGULAR_EXPRESSION "SKIPPED:" ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE")
  endforeach()
endfunction()
