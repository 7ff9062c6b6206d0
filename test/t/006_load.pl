# A short load run against the test cluster: tools/load-test.sh --existing
# with 32 clients for LOAD_SECONDS (10) seconds.  Correctness only, no timing
# assertions: every call succeeded with the reference result, the engine's
# queue is empty afterwards, the same host served the whole run, and memory
# did not grow beyond a generous bound.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use R1Test;
use IPC::Run qw(run timeout);
use Test::More;

plan skip_all => 'R1_TEST_MODEL not set (run test/run-extension-tests.sh)' unless $ENV{R1_TEST_MODEL};

ok(wait_ready(), 'engine is ready');
my $out = '';
local $ENV{LOAD_SECONDS} = $ENV{LOAD_SECONDS} // 10;
local $ENV{LOAD_CLIENTS} = 32;
my $ok = run(["$FindBin::Bin/../../tools/load-test.sh", '--existing'], '>&', \$out, timeout(300));
diag($out);
ok($ok, 'tools/load-test.sh --existing exits 0');
my %r = $out =~ /^LOAD (\w+)=(\S*)$/mg;

cmp_ok($r{done} // 0, '>', 32, "calls completed: " . ($r{done} // '?'));
is($r{latencies}, $r{done}, 'one latency per completed call');
is($r{failed}, 0, 'no failed call (each checks its result against the reference)');
is($r{aborted}, 0, 'no pgbench client aborted');
is($r{pgbench_rc}, 0, 'pgbench exit status 0');
is($r{queue}, 0, 'engine queue empty at the end');
is($r{host_pid_after}, $r{host_pid_before}, 'the same host served the whole run');
my $host_growth = ($r{host_rss_after_kb} // 0) - ($r{host_rss_before_kb} // 0);
cmp_ok($host_growth, '<', 64 * 1024, "host RSS growth $host_growth kB < 64 MB");
my $ch_growth = ($r{children_rss_after_kb} // 0) - ($r{children_rss_before_kb} // 0);
cmp_ok($ch_growth, '<', 64 * 1024, "postmaster children RSS growth $ch_growth kB < 64 MB");
check_no_orphans('load');
done_testing();
