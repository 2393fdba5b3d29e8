# cmake/package.cmake — what `cmake --install` adds for builds against the
# installed eventbus: the CMake package (eventbus::eventbus,
# eventbus::transport, eventbus::conformance) and the pkg-config files
# (eventbus.pc, eventbus-transport.pc, eventbus-conformance.pc), all
# relative to the prefix, so a relocated prefix works. The conformance
# library joins the export set in conformance/CMakeLists.txt.
include(CMakePackageConfigHelpers)

add_library(eventbus_transport INTERFACE)
target_include_directories(eventbus_transport INTERFACE
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/core/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
set_target_properties(eventbus_transport PROPERTIES EXPORT_NAME transport)
set_target_properties(eventbus PROPERTIES EXPORT_NAME eventbus)
install(TARGETS eventbus eventbus_transport EXPORT eventbusTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})

set(EB_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/eventbus)
install(EXPORT eventbusTargets NAMESPACE eventbus:: DESTINATION ${EB_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/package/eventbusConfig.cmake.in
  ${CMAKE_BINARY_DIR}/eventbusConfig.cmake INSTALL_DESTINATION ${EB_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/eventbusConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_BINARY_DIR}/eventbusConfig.cmake
              ${CMAKE_BINARY_DIR}/eventbusConfigVersion.cmake
        DESTINATION ${EB_CMAKE_DIR})

foreach(pc eventbus eventbus-transport eventbus-conformance)
  configure_file(${CMAKE_CURRENT_LIST_DIR}/package/${pc}.pc.in ${CMAKE_BINARY_DIR}/${pc}.pc @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/${pc}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()
