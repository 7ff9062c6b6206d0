# Results of any length come back intact: a generated model that repeats a
# 64-character token forever (r1 demo-model --loop) makes a 130 KB think
# trace; r1_reason and r1_reason_many must return exactly what `r1 generate`
# computes on the same model.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use R1Test;
use IPC::Run qw(run timeout);
use Digest::MD5 qw(md5_hex);
use JSON::PP;
use Test::More;

plan skip_all => 'R1_TEST_MODEL not set (run test/run-extension-tests.sh)' unless $ENV{R1_TEST_MODEL};

my $r1 = "$FindBin::Bin/../../bin/r1";
my $dir = "$ENV{R1_TEST_TMP}/loop-model";
my $tokens = 2000;
my $prompt = 'Write a long line.';
my ($out, $err) = ('', '');
ok(run([$r1, 'demo-model', '--out', $dir, '--loop', '--text', 'Long: ' . ('-' x 64)], '>', \$out, '2>', \$err),
	'a looping demo model') or diag($err);
system('chmod', '-R', 'a+rX', $dir);
# loop detection (on by default) would stop this model: off, to get the whole trace
ok(run([$r1, 'generate', '--model', $dir, '--prompt', $prompt, '--temperature', '0', '--max-tokens', $tokens,
	'--device', 'cpu', '--repetition-max-span', '0'], '>', \$out, '2>', \$err, timeout(300)), 'r1 generate: the reference') or diag($err);
my $ref = decode_json($out);
cmp_ok(length($ref->{think}), '>', 100_000, 'the reference trace is over 100 KB (' . length($ref->{think}) . ' bytes)');
is($ref->{finish_reason}, 'length', 'the reference runs to max_tokens');

set_conf("r1.model = '$dir'");
ok(wait_for('the looping model is served', sub { status('state') eq 'ready' && status('model_path') eq $dir }, 60),
	'engine serves the looping model');

my $row = query("SET r1.repetition_max_span = 0; SELECT length(think), md5(think), finish_reason, completion_tokens, answer IS NULL
	FROM r1_reason('$prompt', max_tokens => $tokens, temperature => 0)", timeout => 300);
is($row, join('|', length($ref->{think}), md5_hex($ref->{think}), 'length', $tokens, 't'),
	'r1_reason returns the whole trace, byte for byte');

my $many = query("SET r1.repetition_max_span = 0; SELECT count(*), count(DISTINCT md5(think)), min(md5(think)), min(length(think)), count(error)
	FROM r1_reason_many(ARRAY['$prompt', '$prompt', '$prompt'], max_tokens => $tokens, temperature => 0)",
	timeout => 300);
is($many, join('|', 3, 1, md5_hex($ref->{think}), length($ref->{think}), 0),
	'r1_reason_many returns three identical whole traces');

is(status('coalesce(active_requests, 0) + coalesce(queue_depth, 0)'), 0, 'nothing left in the engine');
reset_conf('r1.model');
ok(wait_for('the test model is back', sub { status('state') eq 'ready' && status('model_path') ne $dir }, 60),
	'back to the test model');
like(query($GREEDY), qr/\|42\|stop$/, 'and it answers as before');
done_testing();
