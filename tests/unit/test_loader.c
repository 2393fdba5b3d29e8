/*
 * test_loader.c — the plugin loader (core/src/loader.c): lookup by name and
 * by path, the search path and its "not found" sentence, the refusals of
 * unsafe files and directories, the descriptor checks (with the fixtures
 * of tests/plugins/), and balanced libltdl init/exit.
 *
 * The eb__ functions are hidden in libeventbus.so, so this unit test
 * compiles loader.c into itself (it must come first: it defines
 * _GNU_SOURCE). That also lets the tests read ltdl_users.
 */
#ifndef EB_PLUGIN_INSTALL_SUBDIR
#define EB_PLUGIN_INSTALL_SUBDIR "eventbus"
#endif
#include "loader.c"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>

#define FIXTURE(name) EB_TEST_PLUGIN_DIR "/eventbus-" name ".so"

static char errstr[1024];
static char tmpdir[64];        /* a mkdtemp() directory, removed in teardown */
static char tmpdir_real[PATH_MAX];  /* the same without symlinks */
static char installed[PATH_MAX];  /* the installed dir, when a test created it */

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    return remove(path);
}

static void setup(void)
{
    unsetenv("EVENTBUS_PLUGIN_PATH"); /* ctest sets it to the build tree */
    errstr[0] = '\0';
}

static void teardown(void)
{
    if (tmpdir[0])
        nftw(tmpdir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    if (installed[0])
        nftw(installed, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(loader, .init = setup, .fini = teardown);

static void make_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/eb-loader-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    cr_assert_not_null(realpath(tmpdir, tmpdir_real));
}

/* Copies the okfixture into dir/file_name with `mode`; returns the path. */
static char *copy_fixture(const char *dir, const char *file_name, mode_t mode)
{
    static char path[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, file_name);
    FILE *in = fopen(FIXTURE("okfixture"), "rb");
    FILE *out = fopen(path, "wb");
    cr_assert(in && out, "copy %s: %s", path, strerror(errno));
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    cr_assert_eq(fclose(out), 0);
    cr_assert_eq(chmod(path, mode), 0);
    return path;
}

static bool still_mapped(const char *path)
{
    void *handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (handle)
        dlclose(handle);
    return handle != NULL;
}

static void skip_unless_root(void)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to chown a file");
}

/* ------------------------------------------------------------- lookup */

Test(loader, loads_by_name_from_plugin_path)
{
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load("okfixture", EB_TEST_PLUGIN_DIR, &p, errstr,
                                 sizeof errstr), 0, "%s", errstr);
    cr_assert_str_eq(eb__plugin_transport(p)->name, "okfixture");
    char *expected = realpath(FIXTURE("okfixture"), NULL);
    cr_assert_str_eq(eb__plugin_file(p), expected);
    free(expected);
    eb__plugin_unload(p);
}

Test(loader, skips_missing_and_empty_plugin_path_entries)
{
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load("okfixture", "::/nonexistent:" EB_TEST_PLUGIN_DIR "/:",
                                 &p, errstr, sizeof errstr), 0, "%s", errstr);
    eb__plugin_unload(p);
}

Test(loader, loads_by_path)
{
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load(FIXTURE("okfixture"), NULL, &p, errstr,
                                 sizeof errstr), 0, "%s", errstr);
    cr_assert_str_eq(eb__plugin_transport(p)->name, "okfixture");
    eb__plugin_unload(p);
}

Test(loader, loads_a_bare_so_file_name_from_the_working_directory)
{
    cr_assert_eq(chdir(EB_TEST_PLUGIN_DIR), 0);
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load("eventbus-okfixture.so", NULL, &p, errstr,
                                 sizeof errstr), 0, "%s", errstr);
    eb__plugin_unload(p);
}

Test(loader, uses_EVENTBUS_PLUGIN_PATH)
{
    setenv("EVENTBUS_PLUGIN_PATH", "/nonexistent:" EB_TEST_PLUGIN_DIR, 1);
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load("okfixture", "", &p, errstr, sizeof errstr),
                 0, "%s", errstr);
    eb__plugin_unload(p);
}

Test(loader, plugin_path_comes_before_EVENTBUS_PLUGIN_PATH)
{
    make_tmpdir();
    copy_fixture(tmpdir, "eventbus-okfixture.so", 0755);
    setenv("EVENTBUS_PLUGIN_PATH", EB_TEST_PLUGIN_DIR, 1);
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load("okfixture", tmpdir, &p, errstr,
                                 sizeof errstr), 0, "%s", errstr);
    cr_assert(strncmp(eb__plugin_file(p), tmpdir_real, strlen(tmpdir_real)) == 0,
              "loaded %s", eb__plugin_file(p));
    eb__plugin_unload(p);
}

/* The directory beside the library; here the test executable holds
 * loader.c, so it is <dir of this executable>/eventbus. */
Test(loader, uses_the_installed_directory)
{
    char exe[PATH_MAX];
    cr_assert_not_null(realpath("/proc/self/exe", exe));
    snprintf(installed, sizeof installed, "%s/%s", dirname(exe),
             EB_PLUGIN_INSTALL_SUBDIR);
    cr_assert_eq(mkdir(installed, 0755), 0, "mkdir %s: %s", installed,
                 strerror(errno));
    copy_fixture(installed, "eventbus-okfixture.so", 0755);
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load("okfixture", NULL, &p, errstr, sizeof errstr),
                 0, "%s", errstr);
    eb__plugin_unload(p);
}

Test(loader, not_found_lists_every_directory_searched)
{
    setenv("EVENTBUS_PLUGIN_PATH", "/env/a:/env/b", 1);
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load("nosuch", "/cfg/a:/cfg/b/", &p, errstr,
                                 sizeof errstr), EB_ERR_PLUGIN);
    cr_assert_null(p);
    char exe[PATH_MAX], expected[2 * PATH_MAX];
    cr_assert_not_null(realpath("/proc/self/exe", exe));
    snprintf(expected, sizeof expected,
             "transport 'nosuch' not found: no eventbus-nosuch.so in /cfg/a, "
             "/cfg/b, /env/a, /env/b, %s/eventbus (set plugin.path or "
             "EVENTBUS_PLUGIN_PATH)", dirname(exe));
    cr_assert_str_eq(errstr, expected);
}

Test(loader, refuses_bad_name_characters)
{
    const char *names[] = {"a b", "x;y", "mem*", "", "..", "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        eb_plugin *p = NULL;
        cr_assert_eq(eb__plugin_load(names[i], EB_TEST_PLUGIN_DIR, &p, errstr,
                                     sizeof errstr), EB_ERR_PLUGIN, "%s", names[i]);
        cr_assert(strstr(errstr, "invalid transport name"), "%s", errstr);
        cr_assert(strstr(errstr, "letters, digits, '_' and '-'"), "%s", errstr);
    }
}

Test(loader, missing_explicit_path_says_so)
{
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load("/nonexistent/eventbus-x.so", NULL, &p,
                                 errstr, sizeof errstr), EB_ERR_PLUGIN);
    cr_assert_str_eq(errstr, "cannot load plugin /nonexistent/eventbus-x.so: "
                             "No such file or directory");
}

/* libltdl alone would say "file not found"; the dynamic linker knows. */
Test(loader, says_why_a_file_that_is_not_elf_cannot_be_opened)
{
    make_tmpdir();
    char path[2 * PATH_MAX];
    snprintf(path, sizeof path, "%s/eventbus-garbage.so", tmpdir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("not a shared object\n", f);
    fclose(f);
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load(path, NULL, &p, errstr, sizeof errstr),
                 EB_ERR_PLUGIN);
    cr_assert(strncmp(errstr, "cannot load plugin ", 19) == 0, "%s", errstr);
    cr_assert(strstr(errstr, "file too short"), "%s", errstr);
    cr_assert_eq(ltdl_users, 0);
}

/* ---------------------------------------------------- descriptor checks */

static void assert_refused(const char *path, const char *fragment)
{
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load(path, NULL, &p, errstr, sizeof errstr),
                 EB_ERR_PLUGIN, "%s loaded", path);
    cr_assert_null(p);
    cr_assert(strstr(errstr, fragment), "\"%s\" lacks \"%s\"", errstr, fragment);
    cr_assert(strstr(errstr, "/eventbus-"), "%s names no file", errstr);
    cr_assert_eq(ltdl_users, 0, "the refused handle was not closed");
    cr_assert_not(still_mapped(path), "%s is still mapped", path);
}

Test(loader, refuses_another_abi_major)
{
    char expected[256];
    snprintf(expected, sizeof expected,
             "was built for transport ABI 99.%d but this eventbus (%s) speaks "
             "ABI %d.%d; rebuild the plugin against this eventbus",
             EB_TRANSPORT_ABI_MINOR, EB_VERSION_STRING, EB_TRANSPORT_ABI_MAJOR,
             EB_TRANSPORT_ABI_MINOR);
    assert_refused(FIXTURE("badabi"), expected);
}

Test(loader, refuses_a_file_without_entry_symbol)
{
    assert_refused(FIXTURE("noentry"),
                   "is not an eventbus transport: it has no symbol "
                   "eb_transport_entry");
}

Test(loader, refuses_a_descriptor_smaller_than_abi_1_0)
{
    char expected[128];
    snprintf(expected, sizeof expected,
             "descriptor of 24 bytes is smaller than ABI 1.0's %zu bytes",
             (size_t)TRANSPORT_1_0_SIZE);
    assert_refused(FIXTURE("small"), expected);
}

Test(loader, refuses_a_null_abi_1_0_slot)
{
    assert_refused(FIXTURE("nullslot"), "slot 'resume' NULL");
}

Test(loader, accepts_a_newer_abi_minor)
{
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load("newminor", EB_TEST_PLUGIN_DIR, &p, errstr,
                                 sizeof errstr), 0, "%s", errstr);
    cr_assert_eq(eb__plugin_transport(p)->abi_minor, 7);
    eb__plugin_unload(p);
}

/* The fixture is compiled against this header, so the bytes past a 1.0
 * struct_size hold a begin_close pointer: the core must not take it. */
Test(loader, an_abi_1_0_descriptor_loads_and_has_no_1_1_slot)
{
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load("abi10", EB_TEST_PLUGIN_DIR, &p, errstr,
                                 sizeof errstr), 0, "%s", errstr);
    const eb_transport *t = eb__plugin_transport(p);
    cr_assert_eq(t->struct_size, TRANSPORT_1_0_SIZE);
    cr_assert_not_null(t->begin_close);
    cr_assert_not(EB_TRANSPORT_HAS(t, begin_close),
                  "a slot past the descriptor's struct_size counted as provided");
    eb__plugin_unload(p);
}

Test(loader, an_abi_1_1_descriptor_loads_and_has_no_1_2_slot)
{
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load("abi11", EB_TEST_PLUGIN_DIR, &p, errstr,
                                 sizeof errstr), 0, "%s", errstr);
    const eb_transport *t = eb__plugin_transport(p);
    cr_assert_eq(t->struct_size, offsetof(eb_transport, bus_features));
    cr_assert(EB_TRANSPORT_HAS(t, begin_close));
    cr_assert_not(EB_TRANSPORT_HAS(t, bus_features),
                  "a slot past the descriptor's struct_size counted as provided");
    eb__plugin_unload(p);
}

Test(loader, an_abi_1_1_slot_counts_when_the_descriptor_has_it)
{
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load("okfixture", EB_TEST_PLUGIN_DIR, &p, errstr,
                                 sizeof errstr), 0, "%s", errstr);
    cr_assert(EB_TRANSPORT_HAS(eb__plugin_transport(p), begin_close));
    eb__plugin_unload(p);
}

Test(loader, by_name_the_descriptor_name_must_match)
{
    make_tmpdir();
    char *path = copy_fixture(tmpdir, "eventbus-other.so", 0755);
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load("other", tmpdir, &p, errstr, sizeof errstr),
                 EB_ERR_PLUGIN);
    cr_assert(strstr(errstr, "calls itself 'okfixture', not 'other'"), "%s", errstr);
    cr_assert_eq(eb__plugin_load(path, NULL, &p, errstr, sizeof errstr), 0,
                 "by path the name is free: %s", errstr);
    eb__plugin_unload(p);
}

/* ---------------------------------------------------------- file checks */

Test(loader, refuses_a_file_others_can_write)
{
    make_tmpdir();
    copy_fixture(tmpdir, "eventbus-okfixture.so", 0666);
    char expected[3 * PATH_MAX];
    snprintf(expected, sizeof expected,
             "refusing plugin %s/eventbus-okfixture.so: it is writable by "
             "users other than its owner (mode 0666); run chmod go-w on it",
             tmpdir_real);
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load("okfixture", tmpdir, &p, errstr, sizeof errstr),
                 EB_ERR_PLUGIN);
    cr_assert_str_eq(errstr, expected);
    cr_assert_eq(ltdl_users, 0);
}

Test(loader, group_write_is_refused_unless_the_group_is_root)
{
    skip_unless_root();
    make_tmpdir();
    char *path = copy_fixture(tmpdir, "eventbus-okfixture.so", 0664);
    cr_assert_eq(chown(path, 0, 0), 0);
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load(path, NULL, &p, errstr, sizeof errstr), 0,
                 "%s", errstr);
    eb__plugin_unload(p);
    cr_assert_eq(chown(path, 0, 4242), 0);
    cr_assert_eq(eb__plugin_load(path, NULL, &p, errstr, sizeof errstr),
                 EB_ERR_PLUGIN);
    cr_assert(strstr(errstr, "writable by users other than its owner (mode 0664)"),
              "%s", errstr);
}

Test(loader, refuses_a_file_owned_by_another_user)
{
    skip_unless_root();
    make_tmpdir();
    char *path = copy_fixture(tmpdir, "eventbus-okfixture.so", 0755);
    cr_assert_eq(chown(path, 4242, 0), 0);
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load(path, NULL, &p, errstr, sizeof errstr),
                 EB_ERR_PLUGIN);
    cr_assert(strstr(errstr, "it is owned by uid 4242, neither root nor"), "%s", errstr);
}

Test(loader, refuses_a_directory_others_can_write)
{
    make_tmpdir();
    copy_fixture(tmpdir, "eventbus-okfixture.so", 0755);
    cr_assert_eq(chmod(tmpdir, 0777), 0);
    char expected[3 * PATH_MAX];
    snprintf(expected, sizeof expected,
             "refusing plugin %s/eventbus-okfixture.so: its directory %s is "
             "writable by users other than its owner (mode 0777) and not "
             "sticky; run chmod go-w on the directory", tmpdir_real, tmpdir_real);
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load("okfixture", tmpdir, &p, errstr, sizeof errstr),
                 EB_ERR_PLUGIN);
    cr_assert_str_eq(errstr, expected);
}

Test(loader, accepts_a_sticky_directory_others_can_write)
{
    make_tmpdir();
    copy_fixture(tmpdir, "eventbus-okfixture.so", 0755);
    cr_assert_eq(chmod(tmpdir, 01777), 0);
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load("okfixture", tmpdir, &p, errstr, sizeof errstr),
                 0, "%s", errstr);
    eb__plugin_unload(p);
}

/* ------------------------------------------- arguments and ltdl balance */

Test(loader, checks_arguments)
{
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load(NULL, NULL, &p, errstr, sizeof errstr),
                 EB_ERR_INVALID);
    cr_assert_eq(eb__plugin_load("okfixture", NULL, NULL, errstr, sizeof errstr),
                 EB_ERR_INVALID);
    eb__plugin_unload(NULL);
    cr_assert_null(eb__plugin_transport(NULL));
    cr_assert_null(eb__plugin_file(NULL));
}

Test(loader, works_without_an_error_buffer)
{
    eb_plugin *p = NULL;
    cr_assert_eq(eb__plugin_load(FIXTURE("badabi"), NULL, &p, NULL, 0),
                 EB_ERR_PLUGIN);
    strcpy(errstr, "untouched");
    cr_assert_eq(eb__plugin_load(FIXTURE("badabi"), NULL, &p, errstr, 0),
                 EB_ERR_PLUGIN);
    cr_assert_str_eq(errstr, "untouched");
}

Test(loader, load_twice_unload_twice_is_balanced)
{
    eb_plugin *a = NULL, *b = NULL;
    cr_assert_eq(eb__plugin_load("okfixture", EB_TEST_PLUGIN_DIR, &a, errstr,
                                 sizeof errstr), 0, "%s", errstr);
    cr_assert_eq(eb__plugin_load(FIXTURE("okfixture"), NULL, &b, errstr,
                                 sizeof errstr), 0, "%s", errstr);
    cr_assert_eq(eb__plugin_transport(a), eb__plugin_transport(b));
    cr_assert_eq(ltdl_users, 2);
    eb__plugin_unload(a);
    cr_assert(still_mapped(FIXTURE("okfixture")));
    eb__plugin_unload(b);
    cr_assert_eq(ltdl_users, 0);
    cr_assert_not(still_mapped(FIXTURE("okfixture")));
}

Test(loader, a_resident_plugin_stays_mapped)
{
    eb_plugin *p = NULL;
    for (int round = 0; round < 2; round++) {
        cr_assert_eq(eb__plugin_load("resident", EB_TEST_PLUGIN_DIR, &p, errstr,
                                     sizeof errstr), 0, "%s", errstr);
        eb__plugin_unload(p);
        cr_assert(still_mapped(FIXTURE("resident")));
        cr_assert_eq(ltdl_users, 1, "libltdl stays pinned");
    }
}

static void *load_unload_loop(void *arg)
{
    for (int i = 0; i < 200; i++) {
        eb_plugin *p = NULL;
        char err[512];
        if (eb__plugin_load("okfixture", EB_TEST_PLUGIN_DIR, &p, err, sizeof err))
            return (void *)1;
        eb__plugin_unload(p);
    }
    return NULL;
}

Test(loader, threads_load_and_unload_concurrently)
{
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&threads[i], NULL, load_unload_loop, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *failed;
        pthread_join(threads[i], &failed);
        cr_assert_null(failed);
    }
    cr_assert_eq(ltdl_users, 0);
}
