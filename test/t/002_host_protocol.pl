# The engine host (`r1 serve`) on its own, without PostgreSQL: the socket
# protocol of src/serve/protocol.h, malformed and oversized messages, long
# results, a slow reader that must not stall others, and a client that hangs
# up (its request is cancelled).  Needs no PostgreSQL: `prove
# test/t/002_host_protocol.pl` from the repository root makes the demo model
# with bin/r1 when R1_TEST_MODEL is not set.
use strict;
use warnings;
use IO::Socket::UNIX;
use IPC::Run qw(start);
use JSON::PP;
use Time::HiRes qw(time sleep);
use File::Temp qw(tempdir);
use Test::More;

my $r1 = $ENV{R1_BIN} // 'bin/r1';
my $dir = tempdir(CLEANUP => 1);
my $model = $ENV{R1_TEST_MODEL};
if (!$model)
{
	plan skip_all => "$r1 not built (make)" unless -x $r1;
	$model = "$dir/model";
	system($r1, 'demo-model', '--out', $model) == 0 or BAIL_OUT("$r1 demo-model failed");
}
my $sock = "$dir/host.sock";
my ($status, $log) = ('', '');

my $h = start([$r1, 'serve', '--socket', $sock, '--model', $model, '--device', 'cpu',
	'--threads', '2', '--max-ctx', '4096', '--max-queued', '8', '--status-fd', '1'],
	'>', \$status, '2>', \$log);
END { $h->kill_kill if $h && $h->pumpable; }
my $end = time + 60;
while ($status !~ /^ready /m && $h->pumpable && time < $end)
{
	$h->pump_nb;
	sleep 0.05;
}
like($status, qr/^loading\nready \{/, 'status lines: loading, ready {json}');

my $json = JSON::PP->new->canonical;

sub connect_host
{
	return IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $sock) || die "connect: $!";
}

sub send_raw
{
	my ($s, $body) = @_;
	print $s pack('N', length $body) . $body;
}

sub recv_msg
{
	my ($s) = @_;
	my $hdr = '';
	while (length $hdr < 4) { my $n = sysread($s, $hdr, 4 - length $hdr, length $hdr); return undef unless $n; }
	my $len = unpack('N', $hdr);
	my $body = '';
	while (length $body < $len) { my $n = sysread($s, $body, $len - length $body, length $body); return undef unless $n; }
	return $json->decode($body);
}

sub call
{
	my ($req) = @_;
	my $s = connect_host();
	send_raw($s, ref $req ? $json->encode($req) : $req);
	my $r = recv_msg($s);
	close $s;
	return $r;
}

my $greedy = call({ op => 'generate', prompt => 'What is 6*7?', temperature => 0, max_tokens => 200 });
ok($greedy->{ok}, 'generate works');
is($greedy->{boxed}, '42', 'greedy boxed answer');
is($greedy->{finish_reason}, 'stop', 'stops');

my $st = call({ op => 'status' });
ok($st->{ok} && $st->{ctx} == 4096, 'status reports the context');

my $tok = call({ op => 'tokenize', text => 'Hello world' });
is_deeply($tok->{ids}, [9707, 1879], 'tokenize');
is(call({ op => 'tokenize', text => 'Hello world', count_only => JSON::PP::true })->{n}, 2, 'count');

my $e = call('{"op":');
is($e->{code}, '08P01', 'malformed JSON: 08P01');
is(call({ op => 'nope' })->{code}, '08P01', 'unknown op: 08P01');
is(call({ op => 'generate', prompt => 'x', temperature => -1 })->{code}, '22023', 'bad temperature: 22023');
is(call({ op => 'generate', prompt => 'x', top_p => 0 })->{code}, '22023', 'bad top_p: 22023');
is(call({ op => 'generate', prompt => 'x', max_tokens => 0 })->{code}, '22023', 'bad max_tokens: 22023');
is(call({ op => 'generate', prompt => 'hello ' x 5000 })->{code}, '54000', 'prompt beyond the context: 54000');
{
	my $s = connect_host();
	print $s pack('N', 200 << 20);
	is(recv_msg($s)->{code}, '54000', 'a 200 MB message is refused before it is read');
}

# a long result: byte-exact and the same twice
my $long = { op => 'generate', prompt => 'x', temperature => 0, ignore_eos => JSON::PP::true, max_tokens => 3000 };
my $a = call($long);
my $b = call($long);
is($a->{completion_tokens}, 3000, 'ignore_eos runs to max_tokens');
is($a->{finish_reason}, 'length', 'finish_reason length');
is($json->encode($a->{think}) . $json->encode($a->{answer}), $json->encode($b->{think}) . $json->encode($b->{answer}),
	'long results are identical (' . (length($a->{think} // '') + length($a->{answer} // '')) . ' chars)');

# a slow reader does not stall another client
{
	my $slow = connect_host();
	send_raw($slow, $json->encode($long));
	sleep 0.2;
	my $t0 = time;
	my $r = call({ op => 'generate', prompt => 'What is 6*7?', temperature => 0, max_tokens => 200 });
	ok($r->{ok}, sprintf('another call completes while a reader is slow (%.2fs)', time - $t0));
	sleep 1;
	my $r2 = recv_msg($slow);
	is($r2->{completion_tokens}, 3000, 'the slow reader still gets its result');
}

# a client that hangs up cancels its request
{
	my $s = connect_host();
	send_raw($s, $json->encode({ %$long, max_tokens => 4000 }));
	sleep 0.2;
	close $s;
	my $t0 = time;
	my $idle = 0;
	while (time - $t0 < 3) { my $x = call({ op => 'status' }); if ($x->{running} == 0 && $x->{waiting} == 0) { $idle = 1; last; } sleep 0.02; }
	ok($idle, sprintf('a closed connection cancels the request (%.2fs)', time - $t0));
}

# the queue: 8 slots, then 53400 at once (queue_timeout_ms 0) or after waiting
{
	my @s = map { my $s = connect_host(); send_raw($s, $json->encode({ %$long, max_tokens => 4000 })); $s } 1 .. 8;
	sleep 0.3;
	is(call({ op => 'generate', prompt => 'x' })->{code}, '53400', 'full queue: 53400');
	my $t0 = time;
	is(call({ op => 'generate', prompt => 'x', queue_timeout_ms => 300 })->{code}, '53400', 'after queue_timeout_ms');
	cmp_ok(time - $t0, '>=', 0.25, 'waited for a slot');
	close $_ for @s;
}

$h->signal('TERM');
$h->finish;
ok(!-e $sock, 'SIGTERM: the host exits and removes its socket');
done_testing();
