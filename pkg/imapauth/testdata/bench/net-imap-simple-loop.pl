#!/usr/bin/perl
# The old helper's way of checking a login, as Exim's embedded Perl ran it:
# Net::IMAP::Simple over implicit TLS in one long-lived interpreter, here
# with the certificate verified against the test CA.
#
# usage: net-imap-simple-loop.pl HOST:PORT CA_FILE VERIFY_NAME USER
# The first line of stdin is the password. Then each further line asks for
# one login; its latency in microseconds is printed as one line.
use strict;
use warnings;
use IO::Socket::SSL;
use Net::IMAP::Simple;
use Time::HiRes qw(time);

my ($server, $ca_file, $verify_name, $user) = @ARGV;
die "usage: $0 HOST:PORT CA_FILE VERIFY_NAME USER < password-and-requests\n" unless defined $user;
my $password = <STDIN>;
die "no password on stdin\n" unless defined $password;
chomp $password;

$| = 1;
my $i = 0;
while (defined(my $go = <STDIN>)) {
    $i++;
    my $start = time;
    my $imap = Net::IMAP::Simple->new(
        $server,
        use_ssl     => 1,
        timeout     => 10,
        ssl_options => [
            SSL_ca_file         => $ca_file,
            SSL_verify_mode     => SSL_VERIFY_PEER,
            SSL_verifycn_scheme => 'imap',
            SSL_verifycn_name   => $verify_name,
        ],
    ) or die "login $i: connect: $Net::IMAP::Simple::errstr\n";
    $imap->login($user, $password) or die "login $i: " . $imap->errstr . "\n";
    $imap->quit;
    printf "%d\n", (time - $start) * 1e6;
}
